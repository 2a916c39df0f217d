"""Real-time inference: predictors, a dynamic batcher, a KServe v2 HTTP app, a load generator.

    dlhpc serve runs/cnn-… --port 8000 --max-batch-size 32     # dlhpc.serve.server
    open http://127.0.0.1:8000/                                # the web page
    dlhpc loadgen http://127.0.0.1:8000 --scenario server      # dlhpc.serve.loadgen

Image models (UINT8 pixels) and text models (BYTES, UTF-8 strings) alike. Modules: ``config``
(ServeConfig), ``predictor`` (the Predictor seam: eager, ONNX Runtime; an encoder per input
kind), ``batcher`` (dynamic batching), ``protocol`` (KServe v2 bodies) + ``inputs`` (the input
tensor and /predict body per kind), ``app`` + ``middleware`` + ``metrics`` (FastAPI), ``page``
(the web page at /), ``server`` (uvicorn, draining) + ``deadline`` (slow clients time out),
``loadgen`` + ``http1`` (the client).
"""
