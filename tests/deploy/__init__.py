"""Checks of what is deployed and shipped, without deploying: the Helm chart, docker-compose
and the Dockerfile, the Prometheus rules and Grafana dashboards the chart carries, the
GitHub workflows, the wheel and the hashed locks. They need no running services."""
