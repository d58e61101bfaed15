import sys

from framework.export.runner import main

sys.exit(main(sys.argv[1:]))
