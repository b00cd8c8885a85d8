"""Runs the real `moto_server` (same arguments: -H HOST -p PORT) for the Rust tests, with two
additions the tests need:

1. moto 5.2 does not implement iam:AddClientIDToOpenIDConnectProvider (nor its Remove
   counterpart); the controller adds audiences with it, so this file registers both on moto's
   own IAM backend model, with AWS's documented semantics (adding a present ID is a no-op,
   removing an absent one is a no-op). Everything else is moto unchanged.
2. A watchdog: the test process holds our stdin open; when it exits (normally, on panic or
   when killed), the pipe closes and we exit too, so no emulator outlives its test binary.
"""

import os
import sys
import threading

from moto.core.responses import EmptyResult
from moto.iam.responses import IamResponse


def add_client_id_to_open_id_connect_provider(self):
    arn = self._get_param("OpenIDConnectProviderArn")
    client_id = self._get_param("ClientID")
    provider = self.backend.get_open_id_connect_provider(arn)
    if client_id not in provider.client_id_list:
        provider.client_id_list.append(client_id)
    return EmptyResult()


def remove_client_id_from_open_id_connect_provider(self):
    arn = self._get_param("OpenIDConnectProviderArn")
    client_id = self._get_param("ClientID")
    provider = self.backend.get_open_id_connect_provider(arn)
    if client_id in provider.client_id_list:
        provider.client_id_list.remove(client_id)
    return EmptyResult()


for _name, _fn in [
    ("add_client_id_to_open_id_connect_provider", add_client_id_to_open_id_connect_provider),
    ("remove_client_id_from_open_id_connect_provider", remove_client_id_from_open_id_connect_provider),
]:
    # Only fill the gap: a moto release that implements the operation keeps its own version.
    if not hasattr(IamResponse, _name):
        setattr(IamResponse, _name, _fn)


def _exit_when_parent_goes():
    sys.stdin.buffer.read()
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    from moto.server import main

    main(sys.argv[1:])
