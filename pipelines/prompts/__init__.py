"""Prompt text as AUTOMATIC1111's users write it: emphasis weights, BREAK, prompt editing and alternation.

Pure text processing, no torch: the studio checks prompts at the edge with it and the pipelines encode with it.
"""
