"""The NB101 pool search study: ``bench/study_search_pool.py --space nb101`` (see there).

    python bench/study_search_nb101_pool.py (--scores CSV | --naslib) [--seeds 20]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_search_pool import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--space", "nb101", *sys.argv[1:]]))
