"""Local AI engine: model cards, ONNX Runtime sessions, preprocessing, sliding-window inference."""
