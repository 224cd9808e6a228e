"""Tools around the nodes: demo, soak, offline CLI, video source and recorder nodes, bag IO and evaluation."""
