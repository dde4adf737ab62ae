# The SpineReview application image (web, watcher, workers). GPU workers get the CUDA runtime
# from the torch wheels; the host provides the driver via the NVIDIA container toolkit.
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends dcmtk dicom3tools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml ./
COPY webapp webapp
COPY reviewer reviewer
COPY ml ml
RUN pip install --no-cache-dir ".[ml]"
COPY manage.py ./
COPY orthanc orthanc
RUN useradd --create-home spinereview
USER spinereview
EXPOSE 8000
