"""Hardware models: PE array timing, memory traffic, energy; composed by the simulator."""
