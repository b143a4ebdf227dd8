"""Code the tests share: fakes of the network services, builders of tiny models and image folders, contract suites.

Test modules import from here (``from tests.helpers.images import write_image_folder``), never from each other or
from ``conftest.py``, which only declares fixtures.
"""
