"""``python -m lavis.zoo``: see :mod:`lavis.zoo.cli`."""

from lavis.zoo.cli import main

raise SystemExit(main())
