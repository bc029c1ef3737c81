# crysloop worker image. CPU by default; the GPU worker builds with TORCH_INDEX_URL pointing at a CUDA wheel index.
FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN apt-get update && apt-get install -y --no-install-recommends build-essential git && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/crysloop
COPY pyproject.toml constraints.txt README.md ./
COPY crysloop ./crysloop
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==2.13.0" \
 && grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
 && pip install --no-cache-dir -c /tmp/constraints.txt . \
 && pip install --no-cache-dir --no-deps mattersim==1.2.3
ENV CRYSLOOP_DATA_DIR=/data/crysloop PREFECT_SERVER_ANALYTICS_ENABLED=false
VOLUME /data/crysloop
