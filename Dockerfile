# TalkingAvatar-3DGS on a CUDA machine: the same environment as requirements.txt, plus a CUDA toolkit so that
# gsplat (the GPU rasterizer backend) can compile its kernels on first use. Keep in step with requirements.txt.
# It cannot be built on the CPU-only development machines; the CPU path is the default everywhere else.
FROM nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    TALKING_AVATAR_HOME=/data \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev build-essential git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
# From PyPI on Linux x86-64, torch==2.13.0 is the CUDA build, which is what this image wants.
RUN python3.11 -m venv /app/.venv \
    && /app/.venv/bin/pip install --no-cache-dir -r requirements.txt

COPY . .
# Optional weights (GFPGAN, Real-ESRGAN, Wav2Lip, F5-TTS) are never downloaded: mount them at /app/models
# (models/gfpgan/, models/realesrgan/, models/wav2lip/, models/f5-tts/; `python app.py models` lists them).
VOLUME ["/data"]
EXPOSE 7860
CMD ["/app/.venv/bin/python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
