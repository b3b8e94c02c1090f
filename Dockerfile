# The image cluster/deploy/kuberay-*.yaml run: `make image IMAGE=...` builds and tags it, `docker push` publishes it.
# Ray's own image at the Ray version this project runs (setup.cfg allows the range, tests/unit/test_deploy_files.py
# checks this one is in it and is the installed one), Python 3.11 as the venv.
FROM rayproject/ray:2.60.0-py311-cpu

# torch first, from its CPU index and at the Makefile's pin: left to pip, ray-a3c's torch range pulls a CUDA build.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Then this package with the ViZDoom and Atari extras (their wheels bring their engines and ROMs).
WORKDIR /home/ray/ray-a3c
COPY --chown=ray:users . .
RUN pip install --no-cache-dir '.[doom,atari]'
