"""The metric networks (SyncNet, Inception, I3D, ArcFace, LPIPS-Alex) rebuilt in torch, each loading
weights from a local file that the user names (no wheel ships them)."""


def run_on(net, x):
    """``net(x)`` on the network's device, back as float32 on the CPU."""
    return net(x.to(next(net.parameters()).device)).float().cpu()
