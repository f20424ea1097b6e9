"""The robot: the Franka Panda description read from its URDF, its MuJoCo scene, its action mapping."""
from robots_ts.robot.description import RobotDescription, panda

__all__ = ["RobotDescription", "panda"]
