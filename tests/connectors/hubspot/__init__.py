"""HubSpot connector tests: mapping and paging units, end-to-end syncs and pushes against the emulator, and
contract checks of every exchange against HubSpot's official OpenAPI files."""
