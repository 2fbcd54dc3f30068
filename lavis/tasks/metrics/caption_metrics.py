"""COCO caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE where installed).

The scorers are pycocoevalcap's; captions are PTB-tokenized first, as in the COCO caption
evaluation, so the numbers are comparable with published ones. Use :func:`score_captions` on
its own, for example on a results file written by an evaluation run::

    python -m lavis.tasks.metrics output/run/result/test_epochbest.json gt.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from lavis.common.errors import describe_unknown
from lavis.tasks.metrics.errors import MetricError

# scorer name (as written in run.metrics) -> the metric names it reports
METRIC_OUTPUTS: dict[str, tuple[str, ...]] = {
    "BLEU": ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"),
    "METEOR": ("METEOR",),
    "ROUGE_L": ("ROUGE_L",),
    "CIDEr": ("CIDEr",),
    "SPICE": ("SPICE",),
}
DEFAULT_METRICS: tuple[str, ...] = ("BLEU", "METEOR", "ROUGE_L", "CIDEr")
SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
_FIRST_FEW = 10

ImageId = Any  # int in COCO files; str ids work too as long as results use the same values


# ---------------------------------------------------------------------------------------------
# metric names
# ---------------------------------------------------------------------------------------------
def _lookup(names: Mapping[str, str], name: str) -> str | None:
    return names.get(str(name).lower())


def metric_problems(metrics: Sequence[str], agg_metric: str | None = None) -> list[str]:
    """What is wrong with a choice of scorers and a selection metric (empty when fine).

    ``metrics`` are scorer names of :data:`METRIC_OUTPUTS` (any case; ``Bleu_4`` etc. mean BLEU);
    ``agg_metric`` is one reported metric or a sum of them, e.g. ``"CIDEr"`` or ``"CIDEr+Bleu_4"``.
    """
    problems = []
    if not metrics:
        problems.append(f"metrics: empty; choose from {', '.join(METRIC_OUTPUTS)}")
    try:
        chosen = canonical_metrics(metrics)
    except MetricError as e:
        problems.append(f"metrics: {e}")
        chosen = [m for m in metrics if _lookup(_scorer_names(), m)]
    if agg_metric is not None:
        produced = {o.lower(): o for m in chosen for o in METRIC_OUTPUTS.get(_lookup(_scorer_names(), m) or "", ())}
        every = [o for outs in METRIC_OUTPUTS.values() for o in outs]
        for term in str(agg_metric).split("+"):
            term = term.strip()
            if term.lower() in produced:
                continue
            if term.lower() in {o.lower() for o in every}:
                problems.append(f"agg_metric: {term!r} is not computed; add its scorer to metrics (now {list(metrics)})")
            else:
                problems.append("agg_metric: " + describe_unknown("metric", term, every).replace("Registered", "Valid")
                                + ". Sums like 'CIDEr+Bleu_4' work too")
    return problems


def _scorer_names() -> dict[str, str]:
    names = {m.lower(): m for m in METRIC_OUTPUTS}
    names.update({o.lower(): "BLEU" for o in METRIC_OUTPUTS["BLEU"]})
    names["bleu"] = "BLEU"
    return names


def canonical_metrics(metrics: Iterable[str]) -> list[str]:
    """Scorer names in canonical spelling, de-duplicated, in the order given."""
    out: list[str] = []
    names = _scorer_names()
    for m in metrics:
        canon = _lookup(names, m)
        if canon is None:
            raise MetricError(describe_unknown("caption metric", str(m), list(METRIC_OUTPUTS)).replace("Registered", "Valid"))
        if canon not in out:
            out.append(canon)
    return out


def aggregate(metrics: Mapping[str, float], agg_metric: str) -> float:
    """Value of ``agg_metric`` (one metric name or a ``+`` sum of them) from computed ``metrics``."""
    by_lower = {k.lower(): v for k, v in metrics.items()}
    total = 0.0
    for term in agg_metric.split("+"):
        key = term.strip().lower()
        if key not in by_lower:
            raise MetricError(f"agg_metric {agg_metric!r}: {term.strip()!r} is not among the computed metrics {sorted(metrics)}")
        total += float(by_lower[key])
    return total


def spice_problem() -> str | None:
    """Why SPICE cannot run here, with what to do; ``None`` when its models are installed."""
    from lavis.tasks.metrics.java import pycocoevalcap_dir

    lib = pycocoevalcap_dir() / "spice" / "lib"
    missing = [j for j in SPICE_JARS if not (lib / j).is_file()]
    if not missing:
        return None
    return (
        f"SPICE needs the Stanford CoreNLP 3.6.0 models, missing from {lib}: {', '.join(missing)}. "
        "pycocoevalcap downloads them on a machine with network access: run "
        "`python -c 'from pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()'`, "
        "or unpack http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip and copy those two jars into "
        f"{lib}. SPICE also wants up to 8 GB of memory for java. Or remove SPICE from run.metrics."
    )


# ---------------------------------------------------------------------------------------------
# ground truth and results
# ---------------------------------------------------------------------------------------------
def load_caption_gt(gt: str | os.PathLike | Mapping[str, Any]) -> dict[ImageId, list[str]]:
    """``{image_id: [caption, ...]}`` from a COCO caption file (or its loaded dict).

    The file holds ``{"images": [{"id": ...}], "annotations": [{"image_id", "id", "caption"}]}``;
    ``images`` is optional (the annotated images are used then). Every image needs a caption.
    """
    name = "the ground truth" if isinstance(gt, Mapping) else str(gt)
    if not isinstance(gt, Mapping):
        path = Path(gt)
        if not path.is_file():
            raise MetricError(f"caption ground-truth file {path} does not exist; check the data set's build_info "
                              "(the builder writes or downloads it) or pass the right path")
        try:
            gt = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MetricError(f"caption ground-truth file {path} is not valid JSON: {e}") from e
    if not isinstance(gt, Mapping) or not isinstance(gt.get("annotations"), list):
        raise MetricError(f"{name}: expected a COCO caption file, a mapping with an 'annotations' list "
                          "of {'image_id', 'id', 'caption'} (and an 'images' list of {'id'})")
    captions: dict[ImageId, list[str]] = {}
    for i, ann in enumerate(gt["annotations"]):
        if not isinstance(ann, Mapping) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise MetricError(f"{name}: annotations[{i}] = {ann!r} needs an 'image_id' and a string 'caption'")
        captions.setdefault(ann["image_id"], []).append(ann["caption"])
    images = gt.get("images")
    if images is None:
        return captions
    if not isinstance(images, list) or not all(isinstance(im, Mapping) and "id" in im for im in images):
        raise MetricError(f"{name}: 'images' must be a list of mappings with an 'id'")
    ids = [im["id"] for im in images]
    no_caption = [i for i in ids if i not in captions]
    if no_caption:
        raise MetricError(f"{name}: {len(no_caption)} image(s) have no caption in 'annotations': {_few(no_caption)}")
    stray = [i for i in captions if i not in set(ids)]
    if stray:
        raise MetricError(f"{name}: annotations name {len(stray)} image id(s) missing from 'images': {_few(stray)}")
    return {i: captions[i] for i in ids}


def _few(ids: Sequence[Any]) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:_FIRST_FEW])
    return f"[{shown}{', ...' if len(ids) > _FIRST_FEW else ''}]"


def load_results(results: str | os.PathLike | Sequence[Mapping[str, Any]]) -> dict[ImageId, str]:
    """``{image_id: caption}`` from COCO results ``[{"image_id", "caption"}]`` (a list or a JSON file).
    An image captioned twice is an error."""
    if isinstance(results, (str, os.PathLike)):
        path = Path(results)
        if not path.is_file():
            raise MetricError(f"results file {path} does not exist")
        results = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise MetricError('results must be a list of {"image_id": ..., "caption": "..."}')
    out: dict[ImageId, str] = {}
    twice: list[Any] = []
    for i, r in enumerate(results):
        if not isinstance(r, Mapping) or "image_id" not in r or not isinstance(r.get("caption"), str):
            raise MetricError(f"results[{i}] = {r!r}: each result needs an 'image_id' and a string 'caption'")
        if r["image_id"] in out:
            twice.append(r["image_id"])
        out[r["image_id"]] = r["caption"]
    if twice:
        raise MetricError(f"{len(twice)} image(s) have more than one result caption: {_few(twice)}; keep one per image")
    return out


def check_same_images(result_ids: Iterable[ImageId], gt_ids: Iterable[ImageId], gt_name: str = "the ground truth") -> None:
    """Raise :class:`MetricError` unless results and ground truth cover exactly the same images."""
    result_ids, gt_ids = list(result_ids), list(gt_ids)
    gt_set, res_set = set(gt_ids), set(result_ids)
    extra = [i for i in result_ids if i not in gt_set]
    missing = [i for i in gt_ids if i not in res_set]
    if not extra and not missing:
        return
    parts = []
    if extra:
        parts.append(f"{len(extra)} result image id(s) are not in {gt_name}: {_few(extra)}")
    if missing:
        parts.append(f"{len(missing)} image(s) of {gt_name} have no result: {_few(missing)}")
    msg = "; ".join(parts) + ". Score the full split against its own ground-truth file."
    if extra and {str(i) for i in extra} & {str(i) for i in gt_ids}:
        msg += (f" Some ids differ only in type (results {type(extra[0]).__name__}, ground truth "
                f"{type(gt_ids[0]).__name__}): make the data set return the ids the ground-truth file uses.")
    raise MetricError(msg)


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------
def score_captions(
    results: str | os.PathLike | Sequence[Mapping[str, Any]],
    gt_path: str | os.PathLike | Mapping[str, Any],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """COCO caption metrics of ``results`` against the ground truth.

    Args:
        results: ``[{"image_id": ..., "caption": "..."}]``, one per image, or a JSON file of it.
        gt_path: a COCO caption file (or its loaded dict); results must cover exactly its images.
        metrics: scorers to run, of ``BLEU, METEOR, ROUGE_L, CIDEr, SPICE``.

    Returns:
        ``{"Bleu_1": .., "Bleu_2": .., "Bleu_3": .., "Bleu_4": .., "METEOR": .., "ROUGE_L": .., "CIDEr": ..}``
        (corpus-level; for the scorers asked for). BLEU, METEOR and ROUGE-L lie in [0, 1]; CIDEr in
        [0, 10]. CIDEr's n-gram weights come from the references of the scored images, so it needs
        several images to mean anything (one image always gets 0).
    """
    from lavis.tasks.metrics import java

    chosen = canonical_metrics(metrics)
    if not chosen:
        raise MetricError(f"no metrics asked for; choose from {', '.join(METRIC_OUTPUTS)}")
    if "SPICE" in chosen and (why := spice_problem()):
        raise MetricError(why)
    gt = load_caption_gt(gt_path)
    res = load_results(results)
    check_same_images(res, gt, "the ground truth" if isinstance(gt_path, Mapping) else str(gt_path))
    if not gt:
        raise MetricError("the ground truth has no images; nothing to score")
    java.find_java()
    # METEOR loads for seconds: start it now so it loads while the rest is tokenized and scored.
    meteor = java.meteor_server() if "METEOR" in chosen else None

    ids = list(gt)
    flat = [c for i in ids for c in gt[i]] + [res[i] for i in ids]
    tokens = java.ptb_tokenize(flat)
    gts_tok: dict[ImageId, list[str]] = {}
    pos = 0
    for i in ids:
        gts_tok[i] = tokens[pos:pos + len(gt[i])]
        pos += len(gt[i])
    res_tok = {i: [tokens[pos + k]] for k, i in enumerate(ids)}

    out: dict[str, float] = {}
    for name in chosen:
        if name == "BLEU":
            from pycocoevalcap.bleu.bleu import Bleu

            scores, _ = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
            out.update({f"Bleu_{n + 1}": float(s) for n, s in enumerate(scores)})
        elif name == "ROUGE_L":
            from pycocoevalcap.rouge.rouge import Rouge

            out["ROUGE_L"] = float(Rouge().compute_score(gts_tok, res_tok)[0])
        elif name == "CIDEr":
            from pycocoevalcap.cider.cider import Cider

            if not any(t for refs in gts_tok.values() for t in refs):
                raise MetricError("every ground-truth caption is empty after tokenization; CIDEr cannot be computed")
            out["CIDEr"] = float(Cider().compute_score(gts_tok, res_tok)[0])
        elif name == "SPICE":
            from pycocoevalcap.spice.spice import Spice

            try:
                out["SPICE"] = float(Spice().compute_score(gts_tok, res_tok)[0])
            except Exception as e:  # a Java program with its own failure modes
                raise MetricError(f"SPICE failed: {e}. It needs Java 8 and ~8 GB for java; "
                                  "or remove SPICE from run.metrics") from e
    if meteor is not None:
        out["METEOR"] = meteor.score([gts_tok[i] for i in ids], [res_tok[i][0] for i in ids])[0]
    return {o: out[o] for m in chosen for o in METRIC_OUTPUTS[m]}


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Command line: print the metrics of a results file against a ground-truth file as JSON."""
    parser = argparse.ArgumentParser(prog="python -m lavis.tasks.metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help='JSON list of {"image_id", "caption"}')
    parser.add_argument("gt", help="COCO caption ground-truth JSON")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help=f"of {', '.join(METRIC_OUTPUTS)}")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    scores = score_captions(args.results, args.gt, args.metrics)
    print(json.dumps({**scores, "seconds": round(time.perf_counter() - start, 2)}, indent=2))
    return scores
