"""Shared pieces of the model-zoo tests: the real URL a test type borrows, and weight files of a tiny
network in the layouts the zoo downloads (original LAVIS ``.pth``, Hub ``model.safetensors``)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex

import torch

from lavis.models.blip import convert
from lavis.models.blip.blip_caption import BlipCaption

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the fake Hub's commit, made up by the tests
REAL_BASE_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP/blip_coco_caption_base.pth"
# where LAVIS_MIRROR=<base> looks for it: <base>/<host>/<path>
MIRROR_PATH = "/storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP/blip_coco_caption_base.pth"
SAMPLES = {
    "image": torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(11)),
    "text_input": ["a picture of a small red circle", "a picture of a big blue star"],
}


def zoo_commands(text: str) -> list[list[str]]:
    """The ``python -m lavis.zoo ...`` commands a message tells the user to run (in backticks, or on
    an indented line of their own), as the argv lists ``lavis.zoo.cli.main`` takes: what tests run
    to check that the advice works."""
    found = re.findall(r"`(python -m lavis\.zoo [^`]+)`|^\s+(python -m lavis\.zoo .+)$", text, flags=re.M)
    return [shlex.split(a or b)[3:] for a, b in found]


def tiny(seed: int) -> BlipCaption:
    torch.manual_seed(seed)
    return BlipCaption.from_pretrained("tiny").eval()


def outputs(model: BlipCaption) -> tuple[torch.Tensor, list[str]]:
    """Caption loss and greedy captions on fixed inputs."""
    with torch.no_grad():
        loss = model(SAMPLES).loss
    return loss, model.generate({"image": SAMPLES["image"]}, num_beams=1, max_length=12, min_length=5)


def lavis_pth_bytes(model: BlipCaption) -> bytes:
    """``model`` saved as an original LAVIS checkpoint: ``{"model": state_dict}`` in LAVIS names."""
    buf = io.BytesIO()
    torch.save({"model": convert.ours_to_lavis(model.state_dict())}, buf)
    return buf.getvalue()


def hub_safetensors_bytes(model: BlipCaption) -> bytes:
    """``model.blip`` as a Hub repo's ``model.safetensors`` (transformers names, tied tensors once,
    plus the ``position_ids`` buffer older transformers versions saved)."""
    from safetensors.torch import save

    sd = {k[len("blip."):]: v.contiguous() for k, v in model.state_dict().items()}
    sd.pop("text_decoder.cls.predictions.decoder.weight")
    sd.pop("text_decoder.cls.predictions.decoder.bias")
    sd["text_decoder.bert.embeddings.position_ids"] = torch.arange(model.max_positions).unsqueeze(0)
    return save(sd)


def serve_repo(server, repo: str, files: dict[str, bytes], missing: tuple[str, ...] = ()) -> None:
    """Serve ``files`` of ``repo`` the way the Hub does: for ``hf_hub_download`` (HEAD and GET on
    ``/{repo}/resolve/{revision}/{file}`` with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``),
    at ``main`` and at the commit, ``missing`` files answering 404 ``EntryNotFound``; and for
    ``snapshot_download`` the repo's API pages (``/api/models/{repo}/revision/main``: its commit,
    ``/api/models/{repo}/tree/{commit}``: its files with sizes and LFS hashes)."""
    for revision in ("main", COMMIT):
        for name, data in files.items():
            etag = hashlib.sha256(data).hexdigest()  # what the Hub sends for LFS files
            server.add(f"/{repo}/resolve/{revision}/{name}", data,
                       headers={"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"'})
        for name in missing:
            server.add(f"/{repo}/resolve/{revision}/{name}", status=404,
                       headers={"X-Repo-Commit": COMMIT, "X-Error-Code": "EntryNotFound"})
    tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest(),
             "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}
            for name, data in sorted(files.items())]
    info = {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": name} for name in sorted(files)]}
    server.add(f"/api/models/{repo}/revision/main", json.dumps(info).encode())
    server.add(f"/api/models/{repo}/tree/{COMMIT}", json.dumps(tree).encode())
