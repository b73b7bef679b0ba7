"""Split Matching in the pipeline: its training task (train.py), data and candidate sources (data.py), recipes
(recipes.py) and the method behind `oczss.load` / eval / predict (predict.py). Needs the `sm` extra."""
