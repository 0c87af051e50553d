"""The llm-fleet policy pack: `pulumi preview --policy-pack policy`.

The engine runs this file with the pack directory on sys.path. Building a PolicyPack starts the
analyzer's gRPC server and blocks, so it only happens when run as the program, never on import.
"""

from llmfleet_policies import PACK_NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

if __name__ == "__main__":
    PolicyPack(
        name=PACK_NAME,
        enforcement_level=EnforcementLevel.MANDATORY,
        policies=POLICIES,
        description="Guard rails for the llm-fleet GPU stacks: capacity, storage, exposure, images, nodes.",
    )
