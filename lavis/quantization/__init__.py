"""Post-training quantization of registered models: ``python quantize.py --cfg-path x.yaml``.

Methods are a registry kind (``registry.quantizers``: ``rtn``, ``gptq``, ``awq``, ``smoothquant``);
the model seam says which layers are quantized (``language_model``, ``vision_tower``,
``projector``); torchao's quantized tensors store and run the result. See docs/quantization.md.
"""
