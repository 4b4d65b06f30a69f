#!/usr/bin/env python3
"""Packs a static `mom` binary into a one-layer container image, without a container engine.

The output is a tar holding both an OCI image layout (oci-layout, index.json, blobs/) and the
`manifest.json` of `docker save`, so `docker load -i`, `kind load image-archive`,
`ctr images import` and `skopeo copy oci-archive:` all take it. The image is `FROM scratch`:
the binary at /mom (entrypoint), /etc/passwd and /etc/group with the non-root user 65532, a CA
bundle, and a writable /tmp. Every timestamp is zero and entries are sorted, so the same binary always gives
the same image digest.

    oci_image.py --binary PATH --tag REPO:TAG --out FILE [--ca-bundle PEM] [--check]

--ca-bundle puts a PEM bundle at /etc/ssl/certs/ca-certificates.crt (kube-rs's TLS stack wants
system roots even when the kubeconfig brings its own CA).

--check re-reads FILE and verifies every digest and size it names (exit 1 on a mismatch).
"""

import argparse
import hashlib
import io
import json
import sys
import tarfile


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int, uid: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = uid
    info.uname = info.gname = ""
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def layer(binary: bytes, ca_bundle: bytes | None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "etc", None, 0o755)
        add(tar, "etc/group", b"root:x:0:\nnonroot:x:65532:\n", 0o644)
        add(tar, "etc/passwd",
            b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
            0o644)
        if ca_bundle is not None:
            add(tar, "etc/ssl", None, 0o755)
            add(tar, "etc/ssl/certs", None, 0o755)
            add(tar, "etc/ssl/certs/ca-certificates.crt", ca_bundle, 0o644)
        add(tar, "home", None, 0o755)
        add(tar, "home/nonroot", None, 0o700, uid=65532)
        add(tar, "mom", binary, 0o755)
        add(tar, "tmp", None, 0o1777)
    return out.getvalue()


def build(binary_path: str, tag: str, out_path: str, ca_path: str | None) -> str:
    with open(binary_path, "rb") as f:
        binary = f.read()
    ca_bundle = None
    if ca_path:
        with open(ca_path, "rb") as f:
            ca_bundle = f.read()
        if b"-----BEGIN CERTIFICATE-----" not in ca_bundle:
            sys.exit(f"oci_image.py: --ca-bundle {ca_path} holds no PEM certificate")
    if binary[:4] != b"\x7fELF":
        sys.exit(f"oci_image.py: {binary_path} is not an ELF binary")
    layer_tar = layer(binary, ca_bundle)
    layer_digest = sha256(layer_tar)
    version = tag.rsplit(":", 1)[-1]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/mom"],
            "User": "65532:65532",
            "WorkingDir": "/home/nonroot",
            "Env": ["HOME=/home/nonroot"],
            "Labels": {
                "org.opencontainers.image.title": "mom",
                "org.opencontainers.image.description": "MOM Kubernetes operator (placement, scaling, receipts)",
                "org.opencontainers.image.version": version,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "hack/oci_image.py: /mom, /etc/passwd, /tmp"}],
    }
    config_json = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config_json),
            "size": len(config_json),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": len(layer_tar),
        }],
    }
    manifest_json = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(manifest_json),
            "size": len(manifest_json),
            "annotations": {
                "io.containerd.image.name": tag,
                "org.opencontainers.image.ref.name": version,
            },
        }],
    }
    blob = lambda d: "blobs/sha256/" + d.split(":", 1)[1]  # noqa: E731
    docker_manifest = [{
        "Config": blob(sha256(config_json)),
        "RepoTags": [tag],
        "Layers": [blob(layer_digest)],
    }]
    with tarfile.open(out_path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "blobs", None, 0o755)
        add(tar, "blobs/sha256", None, 0o755)
        for data in sorted([config_json, manifest_json, layer_tar], key=sha256):
            add(tar, blob(sha256(data)), data, 0o644)
        add(tar, "index.json", json.dumps(index, sort_keys=True).encode(), 0o644)
        add(tar, "manifest.json", json.dumps(docker_manifest, sort_keys=True).encode(), 0o644)
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
    return sha256(manifest_json)


def check(path: str) -> list[str]:
    """Every problem found in the archive at `path` (empty when it is consistent)."""
    problems = []
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    for required in ("oci-layout", "index.json", "manifest.json"):
        if required not in files:
            problems.append(f"{required} is missing")
    if problems:
        return problems

    def blob(desc):
        name = "blobs/sha256/" + desc["digest"].split(":", 1)[1]
        data = files.get(name)
        if data is None:
            problems.append(f"{name} is missing")
        elif sha256(data) != desc["digest"] or len(data) != desc["size"]:
            problems.append(f"{name} does not match its descriptor")
        return data or b"{}"

    index = json.loads(files["index.json"])
    for m in index["manifests"]:
        manifest = json.loads(blob(m))
        config = json.loads(blob(manifest["config"]))
        layers = [blob(layer) for layer in manifest["layers"]]
        if [sha256(x) for x in layers] != config["rootfs"]["diff_ids"]:
            problems.append("config rootfs.diff_ids do not match the layers")
        for data in layers:
            with tarfile.open(fileobj=io.BytesIO(data)) as layer_tar:
                mom = layer_tar.getmember("mom")
                if not mom.mode & 0o111:
                    problems.append("/mom is not executable")
        if config["config"].get("Entrypoint") != ["/mom"]:
            problems.append("the entrypoint is not /mom")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ca-bundle")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if ":" not in args.tag.rsplit("/", 1)[-1]:
        sys.exit(f"oci_image.py: --tag {args.tag!r} needs a :TAG")
    digest = build(args.binary, args.tag, args.out, args.ca_bundle)
    if args.check:
        problems = check(args.out)
        if problems:
            sys.exit("oci_image.py: " + "; ".join(problems))
    print(json.dumps({"image": args.tag, "manifest_digest": digest, "archive": args.out}))


if __name__ == "__main__":
    main()
