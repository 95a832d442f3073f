"""Thin rclpy adapters around robot_rl: msg <-> numpy, parameters, timers."""
