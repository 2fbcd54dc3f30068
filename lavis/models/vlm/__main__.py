"""``python -m lavis.models.vlm merge ...``: see :mod:`lavis.models.vlm.merge`."""

import sys

from lavis.models.vlm.merge import main

sys.exit(main())
