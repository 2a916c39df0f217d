"""dlhpc — train and serve the classic deep-learning models at the speed of the hardware.

Layers (imports point down the list only; ``tests/test_architecture.py`` enforces it)::

    reference/  the tutorial's math in NumPy (the executable specification)
    models/     single-device torch.nn models
    data/       bytes -> tensors
    engine/     the one training loop, evaluation, checkpoints, run directories
    optimize/   model -> model transforms and exporters
    serve/      predictors, dynamic batching, HTTP
    bench/      side-by-side benchmarks
    cli.py      parse -> config -> call one function
"""

__version__ = "0.1.0"
