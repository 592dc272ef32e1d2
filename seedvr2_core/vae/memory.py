"""placeholder"""
def plan_tiling(vae, op, size, tiling):
    raise NotImplementedError
