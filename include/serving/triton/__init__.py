"""Online serving on NVIDIA Triton Inference Server (CPU, python backend running ONNX exports).

* :mod:`include.serving.triton.server` starts and stops a real ``tritonserver`` from its own virtualenv
  (``.venv-triton``, made by ``scripts/setup_triton.sh``); ``python -m include.serving.triton.server``.
* :mod:`include.serving.triton.repository` exports a registered MLflow version into a Triton model
  repository: ``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/<version>/{model.onnx,model.py,export.json}``
  (the ONNX conversion and its parity check: :mod:`include.serving.onnx`).
* :mod:`include.serving.triton.model` is the python backend model every version runs, copied unchanged
  as ``model.py``; it imports no project code (Triton's virtualenv has none).
* :mod:`include.serving.triton.client` speaks the KServe v2 HTTP protocol: health, load/unload, infer.

No Airflow imports here: the hooks and operators in ``plugins/`` wrap these modules.
"""
