# Custom SDK container for GPU workers on Dataflow (not buildable on the dev
# machines: no Docker engine there). Build and push, then pass
#   --sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/speechtok:0.1.0
# (see README, "Running on Dataflow").
#
# Base: Beam's own Python 3.11 SDK image for the Beam version we pin, so the
# worker harness matches the SDK that submits the job.
FROM apache/beam_python3.11_sdk:2.77.0

# The CUDA build of the same torch we test on CPU; its wheel carries the CUDA
# runtime libraries, Dataflow's GPU workers supply the driver
# (--dataflow_service_options=worker_accelerator=...;install-nvidia-driver).
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126

WORKDIR /opt/speechtok
COPY setup.py constraints.txt ./
COPY datastore ./datastore
COPY pipelines ./pipelines
COPY tokenizer ./tokenizer
COPY corpora ./corpora
COPY kmeans ./kmeans
COPY trainer ./trainer
# Constraints keep the tested pins; torch is filtered out of them so the CUDA
# build installed above stays (2.13.0 satisfies every range we declare).
RUN grep -v '^torch==' constraints.txt > /tmp/constraints-no-torch.txt \
 && pip install --no-cache-dir ".[faiss]" -c /tmp/constraints-no-torch.txt \
 && python -c "import datastore, pipelines, tokenizer, corpora, kmeans, trainer, torch; print(torch.__version__)"

# Keep Beam's boot entry point: it starts the SDK worker harness.
ENTRYPOINT ["/opt/apache/beam/boot"]
