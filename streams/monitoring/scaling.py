"""The replica count KEDA's Kafka scaler would choose for a stage.

KEDA's kafka trigger reports the group's total lag on the topic (capped at
``partitions * lagThreshold``, since replicas beyond the partition count would idle);
the HPA it drives then asks for ``ceil(lag / lagThreshold)`` replicas, bounded by the
ScaledObject's min and max. At or below ``activationLagThreshold`` the ScaledObject is
inactive and KEDA scales to ``minReplicaCount`` (zero when allowed). The chart renders its
ScaledObjects from the same settings, so this number is what the cluster will do.
"""

from __future__ import annotations

import math

from streams.settings import ScalingSettings


def desired_replicas(total_lag: int, partitions: int, scaling: ScalingSettings) -> int:
    """Replicas for a stage whose group is ``total_lag`` messages behind on its input topic."""
    if partitions < 1:
        return scaling.min_replicas
    upper = max(1, min(scaling.max_replicas, partitions))
    if total_lag <= scaling.activation_lag_threshold:
        return min(scaling.min_replicas, upper)
    capped = min(total_lag, partitions * scaling.lag_threshold)
    wanted = math.ceil(capped / scaling.lag_threshold)
    lower = min(max(1, scaling.min_replicas), upper)  # active: at least one replica
    return max(lower, min(wanted, upper))
