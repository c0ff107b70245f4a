"""Pure ML pipelines: params in, images out. Nothing here imports `studio` or `gradio`."""
