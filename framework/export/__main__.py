import sys

from framework.export.host import main

sys.exit(main())
