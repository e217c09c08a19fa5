"""ServerApp: wait for every SuperNode, send one training message each, average the replies.

The run fails (and `flwr list` shows it failed) unless every SuperNode answers within the
round timeout and the average is what the ClientApp's rule gives.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    wanted = int(context.run_config["num-supernodes"])
    timeout = float(context.run_config["round-timeout"])

    # Every SuperNode of the federation must be connected.
    deadline = time.monotonic() + timeout
    nodes = list(grid.get_node_ids())
    while len(nodes) < wanted and time.monotonic() < deadline:
        time.sleep(1)
        nodes = list(grid.get_node_ids())
    if len(nodes) < wanted:
        raise RuntimeError(f"{len(nodes)} of {wanted} SuperNodes connected within {timeout:g} s")

    # One round: each node adds 1 to the weights it gets; the average must be weights + 1.
    weights = np.arange(6, dtype=np.float64).reshape(2, 3)
    messages = [
        Message(
            RecordDict({"arrays": ArrayRecord([weights])}),
            dst_node_id=node,
            message_type=MessageType.TRAIN,
        )
        for node in nodes[:wanted]
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    good = [reply for reply in replies if not reply.has_error()]
    if len(good) < wanted:
        errors = [str(reply.error) for reply in replies if reply.has_error()]
        raise RuntimeError(
            f"{len(good)} of {wanted} SuperNodes answered the round within {timeout:g} s "
            f"(errors: {errors or 'none'})"
        )
    average = np.mean([r.content["arrays"].to_numpy_ndarrays()[0] for r in good], axis=0)
    if not np.allclose(average, weights + 1):
        raise RuntimeError(f"aggregated weights {average.tolist()} differ from weights + 1")
    print(f"bpvalidate: round complete with {len(good)} SuperNodes")
