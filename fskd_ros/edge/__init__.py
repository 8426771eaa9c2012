"""Edge runtime tools: TensorRT engines, int8 CPU path, benchmarks (no torch)."""
