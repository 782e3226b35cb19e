"""End-to-end tests through real gateways (NGINX, Caddy) and the Traefik contract."""
