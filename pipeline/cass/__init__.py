"""CASS, the training-free method, on oczss's datasets, evaluation loop, metrics, pictures and weight loading:
named recipes, the sliding-window segmenter of the training-free protocol, `eval --method cass` and
`predict --method cass`."""
