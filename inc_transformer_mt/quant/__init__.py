"""INT8 quantization on top of INC 3.10: KL calibration, the INC bridge, sensitivity, graph fixes."""
