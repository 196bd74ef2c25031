# The OCI image Istio pulls for a WasmPlugin `url: oci://…`: nothing but the
# module, at /plugin.wasm (the layout Istio accepts for a FROM scratch image).
# Build the module first: `make oci` does both, with docker, podman or buildah.
FROM scratch
ARG WASM=target/wasm32-wasip1/release/cnf_guard.wasm
COPY ${WASM} /plugin.wasm
