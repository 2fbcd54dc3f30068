"""``python -m lavis.tasks.metrics RESULTS.json GT.json [--metrics BLEU CIDEr ...]``: print caption metrics."""

from lavis.tasks.metrics.caption_metrics import main

main()
