import sys

from gpucloud_cli.main import main

sys.exit(main())
