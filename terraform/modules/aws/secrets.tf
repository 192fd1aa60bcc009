# Hangar's own secrets, generated once and kept in the Terraform state (treat the state as
# secret: it also holds the database password and the Redis token).

# The platform admin token.
resource "random_password" "admin_token" {
  length  = 40
  special = false
}

# The master key that encrypts environments' secrets: 32 random bytes, standard base64
# (44 characters ending in "="). Losing it loses the environments' secrets.
resource "random_bytes" "master_key" {
  length = 32
}

# The token of this cluster's cell: the control plane creates the cell `cell_name` with it at
# start-up, and the agent connects with it. The chart wants hgc_ and 32+ letters and digits.
resource "random_password" "cell_token" {
  length  = 40
  special = false
}
