"""Ed25519 signatures on the records of `spend.decisions` and `spend.budgets` (the signed bytes
and headers: `spendpipe.contracts.signatures`).

Writers (the enforcer for decisions; `spendpipe budgets`, `BudgetAdmin` and `BudgetManager` for
budgets) hold one private key; readers (gateways, the enforcer, the CLI's listings) hold only
public keys, several at once so a writer key can be rotated: add the new public key everywhere,
switch the writer, drop the old key once nothing it signed is still needed. A reader drops a
record that is unsigned, signed by a key it does not hold, or whose signature does not match,
before it is parsed: a forged decision never reaches `LatestDecisions`, whatever its version,
and a forged tombstone deletes nothing. Each drop is counted (`topic`, `reason`) and logged once
per writer key id and reason.

`required=False` turns checking off (every record is taken, as before signing existed); writers
still sign when given a key. It is logged as a warning by every reader that starts.

Key material is PEM (`spendpipe keys generate`, or `openssl genpkey -algorithm ed25519`) or the
raw 32-byte key in base64, from a file or a value.
"""

from spendpipe.platform.signing.keys import generate_key_pair, raw_key_pair, read_key_id
from spendpipe.platform.signing.records import Headers, RecordSigner, RecordVerifier, uncollected_rejections
from spendpipe.platform.signing.settings import SigningKeyError, SigningSettings

__all__ = [
    "Headers",
    "RecordSigner",
    "RecordVerifier",
    "SigningKeyError",
    "SigningSettings",
    "generate_key_pair",
    "raw_key_pair",
    "read_key_id",
    "uncollected_rejections",
]
