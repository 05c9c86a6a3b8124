"""A local Hugging Face Hub for tests: dataset repos in memory behind the HTTP API that
huggingface_hub 2.x speaks (no registry package serves one that accepts uploads).

    with HubServer(tokens={"hf_test_token": "dd-user"}) as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        os.environ["HF_HUB_DISABLE_XET"] = "1"   # this server has no Xet storage
        ...
    hub.faults.lfs_upload_status = 403            # the n-th LFS upload answers 403

The server runs on an event loop in a thread of the calling process, on 127.0.0.1.
"""

from dd_core.testing.hub_server.handle import HubServer

__all__ = ["HubServer"]
