"""build: what a run is made of: data tensors, the MLP, init and bias schemes, lr schedules, the device."""
