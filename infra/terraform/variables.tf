variable "vpc_id" {
  type        = string
  description = "VPC for the gateway and its database"
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets (one per availability zone)"
}

variable "alb_security_group_id" {
  type        = string
  description = "Security group of the load balancer in front of the gateway"
}

variable "ami_id" {
  type        = string
  description = "Amazon Linux 2023 AMI with aws-nitro-enclaves-cli installed"
}

variable "instance_type" {
  type        = string
  default     = "m6i.xlarge"
  description = "Nitro-based instance type with at least 4 vCPUs (2 go to the enclave)"
}

variable "instance_count" {
  type    = number
  default = 2
}

variable "db_instance_class" {
  type    = string
  default = "db.t4g.medium"
}

variable "release" {
  type        = string
  description = "Enclave release to deploy (its EIF and signed manifest are fetched at boot)"
}
