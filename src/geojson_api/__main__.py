import sys

from geojson_api.cli import main

sys.exit(main())
