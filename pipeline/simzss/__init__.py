"""SimZSS in the pipeline (issue 22): its run config (config.py), caption views for training (data.py), its Task
for the shared training loop (train.py), its Method behind `oczss.load` / eval / predict (predict.py) and its
training recipes (recipes.py). The networks and losses live in `model/simzss`."""
