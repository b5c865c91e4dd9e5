"""Models: presets (tiny, SmolLM2), their offline files, and helpers such as `freeze`.

Submodules are imported where they are used, so `import rlhf_lab.models` stays light.
"""
