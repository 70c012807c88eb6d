"""`python -m oauth2_token_operator.cli`: the same as the `oauth2-token-operator` script."""

import sys

from oauth2_token_operator.cli.main import main

sys.exit(main())
