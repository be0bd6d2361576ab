"""Serving: the ONNX export and its one parity check, the deploy/verify/rollback steps, online
predictions, and NVIDIA Triton (server, model repository, client, the python backend's model.py)."""
