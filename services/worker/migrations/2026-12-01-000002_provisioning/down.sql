DROP TABLE provisioning_done;
DROP TABLE launched_agents;
