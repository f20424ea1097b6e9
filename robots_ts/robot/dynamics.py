"""The Panda's dynamics and servo parameters, shared by every simulator.

The URDF's inertials are placeholders (0.1 kg m^2 everywhere); both backends replace them with the
identified values below. The servo gains are written for MuJoCo's position actuators; the PyBullet
backend derives its motor gains from them (see :mod:`robots_ts.envs.backends.pybullet_backend`).
"""
from __future__ import annotations

# Link inertials of franka_description (franka_ros), which publishes the identified parameters of
# Gaz, Cognetti, Oliva, Robuffo Giordano and De Luca, "Dynamic identification of the Franka Emika
# Panda robot with retrieval of feasible parameters using penalty-based optimization", IEEE RA-L
# 4(4), 2019: (mass kg, centre of mass in the link frame m, [ixx, ixy, ixz, iyy, iyz, izz] kg m^2
# about the centre of mass). The link frames are the URDF's, identical in pybullet_data's file.
LINK_INERTIALS = {
    "panda_link1": (4.970684, (0.003875, 0.002081, -0.04762),
                    (0.70337, -0.000139, 0.006772, 0.70661, 0.019169, 0.009117)),
    "panda_link2": (0.646926, (-0.003141, -0.02872, 0.003495),
                    (0.007962, -0.003925, 0.010254, 0.02811, 0.000704, 0.025995)),
    "panda_link3": (3.228604, (0.027518, 0.039252, -0.066502),
                    (0.037242, -0.004761, -0.011396, 0.036155, -0.012805, 0.01083)),
    "panda_link4": (3.587895, (-0.05317, 0.104419, 0.027454),
                    (0.025853, 0.007796, -0.001332, 0.019552, 0.008641, 0.028323)),
    "panda_link5": (1.225946, (-0.011953, 0.041065, -0.038437),
                    (0.035549, -0.002117, -0.004037, 0.029474, 0.000229, 0.008627)),
    "panda_link6": (1.666555, (0.060149, -0.014117, -0.010517),
                    (0.001964, 0.000109, -0.001158, 0.004354, 0.000341, 0.005433)),
    "panda_link7": (0.735522, (0.010517, -0.004252, 0.061597),
                    (0.012516, -0.000428, -0.001196, 0.010027, -0.000741, 0.004815)),
    # Hand and fingers: franka_description's hand.xacro (CAD estimates, not identified).
    "panda_hand": (0.73, (-0.01, 0.0, 0.03), (0.001, 0.0, 0.0, 0.0025, 0.0, 0.0017)),
    "panda_leftfinger": (0.015, (0.0, 0.0, 0.0), (2.375e-6, 0.0, 0.0, 2.375e-6, 0.0, 7.5e-7)),
    "panda_rightfinger": (0.015, (0.0, 0.0, 0.0), (2.375e-6, 0.0, 0.0, 2.375e-6, 0.0, 7.5e-7)),
}

# Joint-space position servos: torque = kp (q_target - q) - kv qdot, clamped to the URDF's effort
# limits (87 N m for joints 1-4, 12 N m for 5-7). Gravity is compensated by the bodies' gravcomp,
# as Franka's controller does, so the servos only track.
ARM_KP = (2000.0, 2000.0, 2000.0, 2000.0, 600.0, 600.0, 600.0)
ARM_KV = (120.0, 120.0, 120.0, 120.0, 30.0, 30.0, 30.0)
ARM_ARMATURE = 0.1     # kg m^2, the motors' reflected inertia; also steadies the implicit integrator
ARM_DAMPING = 1.0      # N m s / rad
FINGER_KP, FINGER_KV = 1000.0, 40.0
FINGER_ARMATURE = 0.01
FINGER_DAMPING = 5.0
