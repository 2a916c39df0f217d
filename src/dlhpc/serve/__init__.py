"""Real-time inference: predictors, a dynamic batcher, a KServe v2 HTTP app, a load generator.

    dlhpc serve runs/cnn-… --port 8000 --max-batch-size 32     # dlhpc.serve.server
    dlhpc loadgen http://127.0.0.1:8000 --scenario server      # dlhpc.serve.loadgen

Modules: ``config`` (ServeConfig), ``predictor`` (the Predictor seam: eager, ONNX Runtime),
``batcher`` (dynamic batching), ``protocol`` (KServe v2 bodies), ``app`` + ``middleware`` +
``metrics`` (FastAPI), ``server`` (uvicorn, draining), ``loadgen`` + ``http1`` (the client).
"""
