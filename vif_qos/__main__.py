import sys

from vif_qos.cli import main

sys.exit(main())
